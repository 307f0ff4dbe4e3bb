package spool

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// watchDirs wakes the spool (a non-blocking send on wake) when a file arrives in in (closed
// after writing, moved in, created) or leaves out (the appliance took it: room in the spool),
// using inotify. The file descriptor is non-blocking, so the runtime's poller serves it and stop
// ends the reader at once. Polling stays on regardless: inotify misses changes made on another
// host of a network file system, and it can overflow.
func watchDirs(in, out string, wake chan<- struct{}) (stop func(), err error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("spool: inotify: %w", err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	for _, w := range []struct {
		dir  string
		mask uint32
	}{
		{in, unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_CREATE},
		{out, unix.IN_DELETE | unix.IN_MOVED_FROM},
	} {
		if _, err := unix.InotifyAddWatch(fd, w.dir, w.mask); err != nil {
			f.Close()
			return nil, fmt.Errorf("spool: inotify watch %s: %w", w.dir, err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			if err != nil && !errors.Is(err, unix.EINTR) {
				return // closed by stop
			}
			if n > 0 {
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		}
	}()
	return func() { f.Close(); <-done }, nil
}
