//go:build !linux

package spool

import "errors"

// watchDirs is inotify's stand-in where there is none: the spool polls.
func watchDirs(in, out string, wake chan<- struct{}) (stop func(), err error) {
	return nil, errors.New("spool: no inotify on this system; polling only")
}
