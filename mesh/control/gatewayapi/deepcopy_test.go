package gatewayapi

import (
	"reflect"
	"testing"

	"sigs.k8s.io/randfill"
)

// The hand-written deep copies copy everything and share nothing.
func TestDeepCopy(t *testing.T) {
	f := randfill.NewWithSeed(1).NilChance(0.2).NumElements(1, 3)
	for range 200 {
		var in CircuitBreakerList
		f.Fill(&in)
		out := in.DeepCopyObject().(*CircuitBreakerList)
		if !reflect.DeepEqual(&in, out) {
			t.Fatalf("the copy differs:\n%+v\n%+v", in, *out)
		}
		if p := shared(reflect.ValueOf(in), reflect.ValueOf(*out), "list"); p != "" {
			t.Fatalf("the copy shares %s", p)
		}
		for i := range in.Items {
			c := in.Items[i].DeepCopyObject().(*CircuitBreaker)
			if !reflect.DeepEqual(&in.Items[i], c) {
				t.Fatalf("item %d: the copy differs", i)
			}
			if p := shared(reflect.ValueOf(in.Items[i]), reflect.ValueOf(*c), "item"); p != "" {
				t.Fatalf("item %d: the copy shares %s", i, p)
			}
		}
	}
	var nilBreaker *CircuitBreaker
	var nilList *CircuitBreakerList
	var nilSpec *CircuitBreakerSpec
	if nilBreaker.DeepCopy() != nil || nilBreaker.DeepCopyObject() != nil || nilList.DeepCopy() != nil || nilList.DeepCopyObject() != nil || nilSpec.DeepCopy() != nil {
		t.Error("a copy of nil is not nil")
	}
}

// shared names the first pointer, slice or map a and b share; empty when
// none.
func shared(a, b reflect.Value, p string) string {
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return ""
		}
		if a.Pointer() == b.Pointer() {
			return p
		}
		return shared(a.Elem(), b.Elem(), p)
	case reflect.Slice:
		if a.Len() > 0 && b.Len() > 0 && a.Index(0).Addr().Pointer() == b.Index(0).Addr().Pointer() {
			return p
		}
		for i := range min(a.Len(), b.Len()) {
			if s := shared(a.Index(i), b.Index(i), p+"[]"); s != "" {
				return s
			}
		}
	case reflect.Map:
		if !a.IsNil() && !b.IsNil() && a.Pointer() == b.Pointer() {
			return p
		}
		for _, k := range a.MapKeys() {
			if bv := b.MapIndex(k); bv.IsValid() {
				if s := shared(a.MapIndex(k), bv, p+"[k]"); s != "" {
					return s
				}
			}
		}
	case reflect.Struct:
		for i := range a.NumField() {
			if !a.Type().Field(i).IsExported() {
				continue // time.Time's *Location is shared by every copy, by design
			}
			if s := shared(a.Field(i), b.Field(i), p+"."+a.Type().Field(i).Name); s != "" {
				return s
			}
		}
	}
	return ""
}
