// Package safefs holds moltctl's low-level file-system primitives, each
// written once because each is easy to get subtly wrong: mount-point
// detection (statx STATX_ATTR_MOUNT_ROOT with one /proc/self/mountinfo parser
// as the fallback, so that bind mounts of the same file system are found
// where comparing st_dev is not enough), atomic durable writes (temporary
// file, fsync, rename, fsync of the directory), renameat2 with
// RENAME_NOREPLACE and RENAME_EXCHANGE, and the descriptor-based tree walk,
// copy and verification shared by the volume helper and statemigrate.
//
// The name says what the package is for rather than that it is a grab bag
// ("fsutil"): everything here opens relative to directory descriptors with
// O_NOFOLLOW, never follows a symlink, never leaves the tree it was given or
// crosses into another mount, and leaves either the old or the new state
// behind when the process is killed between any two calls. It prints
// nothing and knows nothing about engines, volumes or compose.
package safefs
