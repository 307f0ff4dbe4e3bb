package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// tmpDir is the directory inside out/ where files are written before they are renamed into
// out/: the same file system, so the rename is atomic. The appliance must not copy it (nor any
// name beginning with a dot).
const tmpDir = ".tmp"

// outDir is the outgoing directory.
type outDir struct {
	dir string
	// failAfter, when set (tests), is called after half of a file was written to its temporary
	// name; an error it returns is taken as the write's failure (a full disk).
	failAfter func(name string) error
	// failSync, when set (tests), is called instead of syncing the directory after a rename.
	failSync func(dir string) error
}

// write puts data into the outgoing directory as name: it writes a temporary file in .tmp/,
// syncs it, renames it into place and syncs the directory. When any step before the rename
// fails, the temporary file is removed and name does not appear: out/ never holds a half file.
// When the directory cannot be synced after the rename, name is taken away again: the write has
// failed, and its caller, which writes it again later, does not count a file left in out/.
// A file that replaces an older one of the same name replaces it whole.
func (o *outDir) write(name string, data []byte) (err error) {
	tmpPath := filepath.Join(o.dir, tmpDir)
	f, err := os.CreateTemp(tmpPath, name+".*")
	if errors.Is(err, fs.ErrNotExist) {
		// .tmp/ was removed while we ran (a clean-up of out/ that did not spare dot names):
		// make it again rather than stop writing until a restart.
		if err = os.Mkdir(tmpPath, 0o700); err == nil || errors.Is(err, fs.ErrExist) {
			f, err = os.CreateTemp(tmpPath, name+".*")
		}
	}
	if err != nil {
		return fmt.Errorf("spool: write %s: %w", name, err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	half := len(data) / 2
	if _, err := f.Write(data[:half]); err != nil {
		return fmt.Errorf("spool: write %s: %w", name, err)
	}
	if o.failAfter != nil {
		if err := o.failAfter(name); err != nil {
			return fmt.Errorf("spool: write %s: %w", name, err)
		}
	}
	if _, err := f.Write(data[half:]); err != nil {
		return fmt.Errorf("spool: write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("spool: sync %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("spool: close %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(o.dir, name)); err != nil {
		return fmt.Errorf("spool: rename %s into %s: %w", name, o.dir, err)
	}
	renamed = true
	sync := syncDir
	if o.failSync != nil {
		sync = o.failSync
	}
	if err := sync(o.dir); err != nil {
		// The appliance may have copied it already; the receiver takes a file twice as once.
		os.Remove(filepath.Join(o.dir, name))
		return fmt.Errorf("spool: sync %s after writing %s: %w", o.dir, name, err)
	}
	return nil
}

// remove deletes name from the outgoing directory, if it is still there, and reports whether it
// was. The appliance may have taken it already.
func (o *outDir) remove(name string) bool {
	err := os.Remove(filepath.Join(o.dir, name))
	return err == nil
}

// sizeOf is the size of name in the outgoing directory, 0 when it is not there.
func (o *outDir) sizeOf(name string) int64 {
	if name == "" {
		return 0
	}
	st, err := os.Lstat(filepath.Join(o.dir, name))
	if err != nil {
		return 0
	}
	return st.Size()
}

// has reports whether name is still in the outgoing directory (the appliance has not taken it).
func (o *outDir) has(name string) bool {
	_, err := os.Lstat(filepath.Join(o.dir, name))
	return err == nil
}

// size is the number of bytes of the regular files in the outgoing directory and its .tmp/.
func (o *outDir) size() (int64, error) {
	var total int64
	for _, dir := range []string{o.dir, filepath.Join(o.dir, tmpDir)} {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) && dir != o.dir {
			continue // .tmp/ is gone: it holds nothing, and write makes it again
		}
		if err != nil {
			return 0, err
		}
		for _, e := range entries {
			if !e.Type().IsRegular() {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue // gone meanwhile
			}
			total += info.Size()
		}
	}
	return total, nil
}

// prepare creates .tmp/, empties it of what a crash left, and removes node's own files from
// out/ that an earlier run left there: that run's bundles are sealed again from the outbox,
// its acknowledgements and manifests are superseded.
func (o *outDir) prepare(node string) error {
	tmp := filepath.Join(o.dir, tmpDir)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(tmp, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	entries, err = os.ReadDir(o.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if n, err := ParseName(e.Name()); err == nil && n.Node == node && e.Type().IsRegular() {
			o.remove(e.Name())
		}
	}
	return nil
}

// syncDir makes a directory's entries durable (a rename into it, a new file in it).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readFile reads up to max+1 bytes of path: enough to tell that a file is too large.
func readFile(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, int64(max)+1))
}

// skipName reports whether a name in in/ is not to be read: hidden and temporary names (an
// appliance's file in the making, our .tmp/).
func skipName(name string) bool { return strings.HasPrefix(name, ".") }
