package servers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// unprivilegedName is the system user PostgreSQL runs as when the tests run
// as root (initdb and postgres refuse root). It is created on first use;
// nobody is the fallback when it cannot be.
const unprivilegedName = "roamtest"

// runAsUnprivileged returns the credential for a server that refuses to run
// as root: nil when the process is not root (the server runs as the caller),
// otherwise the roamtest user, created with useradd when missing, or nobody.
func runAsUnprivileged() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(unprivilegedName)
	if err != nil {
		// Several test binaries may race to create the user: whichever
		// useradd loses fails, and the lookup after it still succeeds.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = exec.CommandContext(ctx, "useradd", "--system", "--user-group", "--no-create-home",
			"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", unprivilegedName).Run()
		u, err = user.Lookup(unprivilegedName)
	}
	if err != nil {
		if u, err = user.Lookup("nobody"); err != nil {
			return nil, fmt.Errorf("servers: no unprivileged user to run as: neither %s nor nobody exists: %w", unprivilegedName, err)
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("servers: user %s: uid %q: %w", u.Username, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("servers: user %s: gid %q: %w", u.Username, u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// chownTree gives dir and everything under it to cred's user; a nil cred
// changes nothing.
func chownTree(dir string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(cred.Uid), int(cred.Gid))
	})
}
