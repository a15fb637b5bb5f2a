// Package helperfs is the program that runs inside moltctl's helper
// container (the hidden `moltctl copy-helper REQUEST` command): on local
// paths (/from, the source or the volume; /to, the volume or a copy-back's
// parent directory) it makes a full or delta copy pass keeping the copy state
// in the volume (StateDir), verifies a volume against its source, finishes a
// volume, probes and measures, and copies a volume back into a bind directory
// with an atomic exchange. It speaks one JSON request in and JSON lines out
// (Request, Line); the tree work itself is safefs's.
//
// It is apart from package volumes, which drives it through the engine, so
// that everything that touches files is tested without an engine (temporary
// directories, as root where needed) and volumes holds the engine side only.
package helperfs
