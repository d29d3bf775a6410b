package proxyinit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
)

// Mode says which iptables back end the rules go to.
type Mode string

// The modes. The zero Mode is ModeAuto.
const (
	// ModeAuto uses the back end whose tables already hold more rules
	// (whatever else on the node installed them with), and iptables-nft
	// when neither holds any.
	ModeAuto Mode = "auto"
	// ModeLegacy uses iptables-legacy (x_tables).
	ModeLegacy Mode = "legacy"
	// ModeNFT uses iptables-nft (nf_tables).
	ModeNFT Mode = "nft"
)

// ParseMode reads auto, legacy or nft.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeLegacy, ModeNFT:
		return m, nil
	}
	return "", fmt.Errorf("--iptables-mode %q: want auto, legacy or nft", s)
}

// Backend is the iptables back end chosen.
type Backend struct {
	// Mode is ModeLegacy or ModeNFT.
	Mode Mode
	// Reason says how ModeAuto chose it; empty when it was asked for.
	Reason string
}

// String is the back end's program name for IPv4: iptables-nft or
// iptables-legacy.
func (b Backend) String() string { return "iptables-" + string(b.Mode) }

// program is one of the back end's programs: ip6tables-nft-restore.
func (b Backend) program(f Family, verb string) string {
	return f.tool() + "-" + string(b.Mode) + "-" + verb
}

// restoreArgs keep the rest of the table (--noflush), and wait up to 5
// seconds for the xtables lock that iptables-legacy takes (iptables-nft
// accepts and ignores it): less than the default command timeout.
func restoreArgs() []string { return []string{"-w", "5", "--noflush"} }

// Installer applies, removes and checks the rules of Options in the nat
// table of the network namespace its commands run in. Its zero value
// chooses the back end itself and runs the commands as processes.
type Installer struct {
	// Mode is the back end to use. "" or ModeAuto: choose.
	Mode Mode
	// Runner runs the iptables programs. nil: ExecRunner{}.
	Runner Runner
}

func (in Installer) runner() Runner {
	if in.Runner == nil {
		return ExecRunner{}
	}
	return in.Runner
}

// Backend returns the back end in.Mode names, or, in auto mode, the one
// whose tables hold more rules (counted in iptables-legacy-save's and
// iptables-nft-save's output, all tables), iptables-nft on a tie. A back
// end whose save program is missing or fails is not chosen; when neither
// works, the error quotes both.
func (in Installer) Backend(ctx context.Context) (Backend, error) {
	switch in.Mode {
	case ModeLegacy, ModeNFT:
		return Backend{Mode: in.Mode}, nil
	case "", ModeAuto:
	default:
		_, err := ParseMode(string(in.Mode))
		return Backend{}, err
	}
	// A probe's back end is usable when its save program ran; why says
	// otherwise why not, for the reason or the error.
	type probe struct {
		mode   Mode
		rules  int
		usable bool
		why    string
		err    error
	}
	var probes [2]probe
	for i, m := range []Mode{ModeLegacy, ModeNFT} {
		name := Backend{Mode: m}.program(IPv4, "save")
		out, err := in.runner().Run(ctx, Command{Name: name})
		p := probe{mode: m, rules: countRules(out), usable: err == nil, err: err}
		switch {
		case errors.Is(err, exec.ErrNotFound):
			p.why = "auto: " + name + " is not installed"
		case err != nil:
			p.why = fmt.Sprintf("auto: %v", err)
		}
		probes[i] = p
	}
	legacy, nft := probes[0], probes[1]
	switch {
	case !legacy.usable && !nft.usable:
		return Backend{}, fmt.Errorf("no iptables back end works: %w; %w", legacy.err, nft.err)
	case !legacy.usable:
		return Backend{Mode: ModeNFT, Reason: legacy.why}, nil
	case !nft.usable:
		return Backend{Mode: ModeLegacy, Reason: nft.why}, nil
	}
	reason := fmt.Sprintf("auto: %d rules in legacy, %d in nft", legacy.rules, nft.rules)
	if legacy.rules > nft.rules {
		return Backend{Mode: ModeLegacy, Reason: reason}, nil
	}
	return Backend{Mode: ModeNFT, Reason: reason}, nil
}

// countRules counts the rules in iptables-save output.
func countRules(save []byte) int {
	n := 0
	for line := range strings.Lines(string(save)) {
		if strings.HasPrefix(line, "-A ") {
			n++
		}
	}
	return n
}

// Plan is what Apply or Remove runs: one iptables-restore per family
// whose table must change. No step means nothing to do.
type Plan struct {
	Backend Backend
	// Families are the families looked at: IPv4, and IPv6 with
	// Options.IPv6.
	Families []Family
	// Remove is a removal's plan.
	Remove bool
	Steps  []Step
	// rendered counts the rules the options render, for the message of
	// a plan with nothing to do.
	rendered int
}

// Step is one family's iptables-restore.
type Step struct {
	Family Family
	// Command is the restore program; its Stdin is the input.
	Command Command
	// Added and Deleted count the rules the step appends and deletes,
	// and ChainsDeleted Skiff's chains it deletes.
	Added, Deleted, ChainsDeleted int
}

// WriteTo writes each step's iptables-restore input, in order: what a dry
// run prints. A plan with nothing to do writes nothing.
func (p Plan) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for _, s := range p.Steps {
		m, err := w.Write(s.Command.Stdin)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Summary is the plan's one-line message, of what was done or, for a dry
// run, of what would be.
func (p Plan) Summary(dryRun bool) string {
	var added, deleted, chains int
	for _, s := range p.Steps {
		added += s.Added
		deleted += s.Deleted
		chains += s.ChainsDeleted
	}
	with := "with " + p.programs()
	verb := func(done, would string) string {
		if dryRun {
			return would
		}
		return done
	}
	var msg string
	switch {
	case p.Remove && len(p.Steps) == 0:
		msg = fmt.Sprintf("no Skiff rules installed %s: nothing %s", with, verb("removed", "to remove"))
	case p.Remove:
		msg = fmt.Sprintf("%s %d rules and %d chains %s", verb("removed", "would remove"), deleted, chains, with)
	case len(p.Steps) == 0:
		msg = fmt.Sprintf("already in place %s: %d rules, nothing %s", with, p.rendered, verb("applied", "to apply"))
	case deleted > 0:
		msg = fmt.Sprintf("%s the installed rules %s: %d deleted, %d appended", verb("replaced", "would replace"), with, deleted, added)
	default:
		msg = fmt.Sprintf("%s %d rules %s", verb("applied", "would apply"), added, with)
	}
	return p.Backend.withReason(msg)
}

// withReason ends msg with how auto mode chose the back end, if it did.
func (b Backend) withReason(msg string) string {
	if b.Reason == "" {
		return msg
	}
	return msg + " (" + b.Reason + ")"
}

// programs names the back end's programs for the plan's families.
func (p Plan) programs() string {
	names := make([]string, len(p.Families))
	for i, f := range p.Families {
		names[i] = f.tool() + "-" + string(p.Backend.Mode)
	}
	return strings.Join(names, " and ")
}

// Plan reads the nat tables and returns what Apply would run to make them
// hold the rules o renders: nothing when they already do; the whole
// rendering (Rules.Restore) when they hold no Skiff rule; otherwise a
// replacement that deletes the jumps it does not want, empties and refills
// Skiff's chains and deletes those it no longer wants.
func (in Installer) Plan(ctx context.Context, o Options) (Plan, error) {
	rendered, err := Render(o)
	if err != nil {
		return Plan{}, err
	}
	b, err := in.Backend(ctx)
	if err != nil {
		return Plan{}, err
	}
	p := Plan{Backend: b}
	for _, r := range rendered {
		p.Families = append(p.Families, r.Family)
		p.rendered += len(r.Rules)
		have, err := in.read(ctx, b, r.Family)
		if err != nil {
			return Plan{}, err
		}
		if fp := planApply(have, r); fp.input != nil {
			p.Steps = append(p.Steps, fp.step(b, r.Family))
		}
	}
	return p, nil
}

// PlanRemove reads the nat tables of the families o names and returns
// what Remove would run: for each table that holds Skiff rules, delete
// the jumps to Skiff's chains, then the chains.
func (in Installer) PlanRemove(ctx context.Context, o Options) (Plan, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Plan{}, err
	}
	b, err := in.Backend(ctx)
	if err != nil {
		return Plan{}, err
	}
	p := Plan{Backend: b, Remove: true, Families: []Family{IPv4}}
	if o.IPv6 {
		p.Families = append(p.Families, IPv6)
	}
	for _, f := range p.Families {
		have, err := in.read(ctx, b, f)
		if err != nil {
			return Plan{}, err
		}
		if fp := planRemove(have, f); fp.input != nil {
			p.Steps = append(p.Steps, fp.step(b, f))
		}
	}
	return p, nil
}

// Execute runs the plan's steps in order. A failed step leaves the tables
// of the steps before it changed.
func (in Installer) Execute(ctx context.Context, p Plan) error {
	for _, s := range p.Steps {
		if _, err := in.runner().Run(ctx, s.Command); err != nil {
			return fmt.Errorf("%v rules: %w", s.Family, err)
		}
	}
	return nil
}

// Apply makes the nat tables hold the rules o renders, and changes
// nothing when they already do (Plan says what it runs). Applying twice
// gives the same tables as applying once.
func (in Installer) Apply(ctx context.Context, o Options) (Plan, error) {
	p, err := in.Plan(ctx, o)
	if err != nil {
		return p, err
	}
	return p, in.Execute(ctx, p)
}

// Remove deletes Skiff's chains and the rules that jump to them from the
// nat tables of the families o names, leaving the rest of the tables as
// they are.
func (in Installer) Remove(ctx context.Context, o Options) (Plan, error) {
	p, err := in.PlanRemove(ctx, o)
	if err != nil {
		return p, err
	}
	return p, in.Execute(ctx, p)
}

// Report is what Check found.
type Report struct {
	Backend  Backend
	Families []Family
	// Differences are one line each, such as
	// "IPv4: missing: -A SKIFF_OUTPUT ..."; none when the installed
	// rules are the rendered ones.
	Differences []string
	rendered    int
}

// InPlace says whether the installed rules are the rendered ones.
func (r Report) InPlace() bool { return len(r.Differences) == 0 }

// Summary is the report's one-line message.
func (r Report) Summary() string {
	with := "with " + Plan{Backend: r.Backend, Families: r.Families}.programs()
	if r.InPlace() {
		return r.Backend.withReason(fmt.Sprintf("rules in place %s: %d rules", with, r.rendered))
	}
	n := fmt.Sprintf("%d differences", len(r.Differences))
	if len(r.Differences) == 1 {
		n = "1 difference"
	}
	return r.Backend.withReason(fmt.Sprintf("the installed rules differ from the options %s: %s", with, n))
}

// Check compares Skiff's rules in the nat tables with those o renders:
// its chains, their rules in order, and the jumps to them. The rest of
// the tables is not looked at.
func (in Installer) Check(ctx context.Context, o Options) (Report, error) {
	rendered, err := Render(o)
	if err != nil {
		return Report{}, err
	}
	b, err := in.Backend(ctx)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Backend: b}
	for _, r := range rendered {
		rep.Families = append(rep.Families, r.Family)
		rep.rendered += len(r.Rules)
		have, err := in.read(ctx, b, r.Family)
		if err != nil {
			return Report{}, err
		}
		for _, d := range diff(have, r) {
			rep.Differences = append(rep.Differences, r.Family.String()+": "+d)
		}
	}
	return rep, nil
}

// read returns what the family's nat table holds of Skiff's.
func (in Installer) read(ctx context.Context, b Backend, f Family) (installed, error) {
	out, err := in.runner().Run(ctx, Command{Name: b.program(f, "save"), Args: []string{"-t", "nat"}})
	if err != nil {
		return installed{}, err
	}
	return parseSave(out), nil
}

// installed is what a nat table holds of Skiff's.
type installed struct {
	// chains are Skiff's chains present, in the table's order.
	chains []string
	// rules are each of Skiff's chains' rule specs, in order.
	rules map[string][]string
	// jumps are the rules of other chains whose target is one of
	// Skiff's.
	jumps []Rule
}

// parseSave reads the nat table of iptables-save output.
func parseSave(save []byte) installed {
	have := installed{rules: map[string][]string{}}
	table := ""
	for line := range strings.Lines(string(save)) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case line == "COMMIT":
			table = ""
		case table != "nat":
		case strings.HasPrefix(line, ":"):
			if name, _, _ := strings.Cut(line[1:], " "); isOwnChain(name) {
				have.chains = append(have.chains, name)
			}
		case strings.HasPrefix(line, "-A "):
			chain, spec, _ := strings.Cut(line[len("-A "):], " ")
			switch {
			case isOwnChain(chain):
				have.rules[chain] = append(have.rules[chain], spec)
			case isOwnChain(target(spec)):
				have.jumps = append(have.jumps, Rule{chain, spec})
			}
		}
	}
	return have
}

// target is the chain a rule jumps or goes to, or "". iptables-save
// prints the target last, and a jump to a chain takes no options.
func target(spec string) string {
	f := strings.Fields(spec)
	if n := len(f); n >= 2 && (f[n-2] == "-j" || f[n-2] == "-g") {
		return f[n-1]
	}
	return ""
}

// wanted is the installed form of r.
func wanted(r Rules) installed {
	want := installed{chains: r.Chains, rules: map[string][]string{}}
	for _, rule := range r.Rules {
		if isOwnChain(rule.Chain) {
			want.rules[rule.Chain] = append(want.rules[rule.Chain], rule.Spec)
		} else {
			want.jumps = append(want.jumps, rule)
		}
	}
	return want
}

// diff lists how have differs from r, one line each, in a stable order.
func diff(have installed, r Rules) []string {
	want := wanted(r)
	var d []string
	for _, c := range want.chains {
		if !slices.Contains(have.chains, c) {
			d = append(d, "missing chain: "+c)
		}
	}
	for _, c := range have.chains {
		if !slices.Contains(want.chains, c) {
			d = append(d, "unexpected chain: "+c)
		}
	}
	lines := func(chain string, specs []string) []string {
		out := make([]string, len(specs))
		for i, s := range specs {
			out[i] = Rule{chain, s}.String()
		}
		return out
	}
	jumpLines := func(js []Rule) []string {
		out := make([]string, len(js))
		for i, j := range js {
			out[i] = j.String()
		}
		return out
	}
	d = append(d, listDiff(jumpLines(have.jumps), jumpLines(want.jumps))...)
	chains := slices.Clone(want.chains)
	for _, c := range have.chains {
		if !slices.Contains(chains, c) {
			chains = append(chains, c)
		}
	}
	for _, c := range chains {
		h, w := lines(c, have.rules[c]), lines(c, want.rules[c])
		ld := listDiff(h, w)
		if len(ld) == 0 && !slices.Equal(h, w) {
			ld = []string{"out of order: the rules of " + c}
		}
		d = append(d, ld...)
	}
	return d
}

// listDiff lists the lines of want missing from have and those of have
// not in want, counting repeats.
func listDiff(have, want []string) []string {
	left := map[string]int{}
	for _, l := range have {
		left[l]++
	}
	var missing []string
	for _, l := range want {
		if left[l] > 0 {
			left[l]--
			continue
		}
		missing = append(missing, "missing: "+l)
	}
	var unexpected []string
	for _, l := range have {
		if left[l] > 0 {
			left[l]--
			unexpected = append(unexpected, "unexpected: "+l)
		}
	}
	return append(missing, unexpected...)
}

// familyPlan is one table's restore input and what it does. No input:
// nothing to do.
type familyPlan struct {
	input                         []byte
	added, deleted, chainsDeleted int
}

func (fp familyPlan) step(b Backend, f Family) Step {
	return Step{
		Family:        f,
		Command:       Command{Name: b.program(f, "restore"), Args: restoreArgs(), Stdin: fp.input},
		Added:         fp.added,
		Deleted:       fp.deleted,
		ChainsDeleted: fp.chainsDeleted,
	}
}

// planApply writes the restore input that turns have into r. Declaring a
// chain creates it, or empties it if it exists; the built-in chains are
// never declared, so the rest of the table stays as it is.
func planApply(have installed, r Rules) familyPlan {
	if len(diff(have, r)) == 0 {
		return familyPlan{}
	}
	want := wanted(r)
	var fp familyPlan
	var lines []string
	// Jumps already in place stay (so no packet ever misses them);
	// the others go.
	kept := map[string]int{}
	for _, j := range want.jumps {
		kept[j.String()]++
	}
	keep := map[string]int{}
	for _, j := range have.jumps {
		if kept[j.String()] > 0 {
			kept[j.String()]--
			keep[j.String()]++
			continue
		}
		lines = append(lines, "-D "+j.Chain+" "+j.Spec)
		fp.deleted++
	}
	for _, c := range want.chains {
		lines = append(lines, ":"+c+" - [0:0]")
	}
	var stale []string
	for _, c := range have.chains {
		fp.deleted += len(have.rules[c])
		if !slices.Contains(want.chains, c) {
			stale = append(stale, c)
			lines = append(lines, ":"+c+" - [0:0]")
		}
	}
	for _, c := range stale {
		lines = append(lines, "-X "+c)
		fp.chainsDeleted++
	}
	for _, rule := range r.Rules {
		if keep[rule.String()] > 0 {
			keep[rule.String()]--
			continue
		}
		lines = append(lines, rule.String())
		fp.added++
	}
	header := fmt.Sprintf("skiff proxy-init: %v nat rules (docs/proxy-init.md)", r.Family)
	if len(have.chains) > 0 || len(have.jumps) > 0 {
		header = fmt.Sprintf("skiff proxy-init: %v nat rules, replacing those installed (docs/proxy-init.md)", r.Family)
	}
	fp.input = restoreInput(header, lines)
	return fp
}

// planRemove writes the restore input that deletes Skiff's chains and the
// jumps to them from have.
func planRemove(have installed, f Family) familyPlan {
	if len(have.chains) == 0 && len(have.jumps) == 0 {
		return familyPlan{}
	}
	var fp familyPlan
	var lines []string
	for _, j := range have.jumps {
		lines = append(lines, "-D "+j.Chain+" "+j.Spec)
		fp.deleted++
	}
	for _, c := range have.chains {
		lines = append(lines, ":"+c+" - [0:0]")
		fp.deleted += len(have.rules[c])
	}
	for _, c := range have.chains {
		lines = append(lines, "-X "+c)
		fp.chainsDeleted++
	}
	fp.input = restoreInput(fmt.Sprintf("skiff proxy-init: remove the %v nat rules (docs/proxy-init.md)", f), lines)
	return fp
}
