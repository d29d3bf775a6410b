//go:build !linux

package local

import "errors"

func setMark(int, int) error { return errors.New("socket marks need Linux") }
