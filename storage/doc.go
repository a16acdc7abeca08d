// Package storage keeps an acceptor's state durable: one protocol.Register
// per key, plus the little state a node must not forget across restarts:
// its proposer's ballot ceiling and age, its acceptor's age fences and
// ceiling, and the deletion GC's queue (GCStore, PROTOCOL.md §9;
// AcceptorStore, §12).
//
// Two implementations satisfy Store: Pebble (the product's default, durable)
// and Memory (unit tests and the simulator only). Both pass the same
// conformance suite (storagetest).
//
// # Data directory
//
// A node's data directory holds the store and the node's state files, and
// has one owner: Dir, which names every file below and reaches each through
// vfs.FS. OpenPebble creates and locks the directory; the store's Dir
// method gives the node (server/daemon) the same Dir for its state files,
// whose meaning is its own. Who writes each file, and when:
//
//	dir/
//	  LOCK               OpenPebble, at every open: held (flock) while the
//	                     store is open, released by Close; never read
//	  FORMAT             OpenPebble, at the directory's first open:
//	                     "caspaxos storage format 1\n", the layout version
//	                     below; checked by every later open
//	  BALLAST            OpenPebble, at an open with room: 64 MiB (by
//	                     default) of reserved space, deleted by an open on a
//	                     full disk so that Pebble can open there
//	                     (keepBallast); never read
//	  pebble/            Pebble: the database, written by every store call
//	  IDENTITY           server/identity, at the directory's first start:
//	                     its node's name and incarnation (JSON)
//	  PEERS              server/identity, when it first hears a member's
//	                     incarnation and when its identity is sealed: the
//	                     members' incarnations (JSON)
//	  MEMBERSHIP         server/daemon, before the node uses a new membership
//	                     state: its membership.NodeState (JSON)
//	  MEMBERSHIP-CHANGE  server/daemon, when its controller starts a change
//	                     and at each step of it, removed when the change ends:
//	                     the membership.Change (JSON)
//	  WAS-MEMBER         server/membership, the first time the node uses a
//	                     membership that lists it: "1\n", read for its
//	                     presence alone
//	  REMOVED            server/membership, when a peer says a newer
//	                     membership no longer lists the node: that
//	                     membership's version
//	  AUTH-SEEN          server/daemon, for server/auth, after a quorum read
//	                     of the auth state that differs from the last one
//	                     written: whether auth was enabled, and the auth
//	                     register's version (JSON)
//	  INCARNATION        releases before IDENTITY, on a node started with
//	                     --join: its incarnation; read once, to make IDENTITY
//	  NAME.tmp           a replace of NAME (FORMAT, BALLAST, a state file) in
//	                     progress, or left by a crash during one: never read,
//	                     overwritten by the next replace of NAME
//
// Every file but LOCK and pebble/ is written whole, by one helper (replace):
// a temporary file, fsync, rename, fsync of dir. After a crash such a file
// holds its old content or its new one, never a part, and once the write
// returned, the new one. A state file (StateFile) is read and written with
// Dir.ReadState and Dir.WriteState; each but WAS-MEMBER, REMOVED and
// INCARNATION starts with a header that holds its format version, length
// and checksum (statefile.go).
//
// FORMAT is written before pebble/ is created. A directory whose FORMAT
// names another version, or that holds pebble/ without FORMAT, is refused
// with ErrFormat. Format version 1 pins Pebble's own format major version
// (see pebbleFormatMajorVersion), so a newer Pebble library never silently
// rewrites a directory an older build must still read.
//
// # Keys
//
// Every Pebble key starts with a one-byte namespace:
//
//	'r' + register key    one protocol.Register (register record)
//	'm' + "ceiling"       the proposer's ballot ceiling (ceiling record)
//	'm' + "age"           the proposer's age (age record)
//	'm' + "acceptor-ceiling"
//	                      the acceptor's ceiling (acceptor ceiling record,
//	                      PROTOCOL.md §12): no ballot with a counter at or
//	                      above it was ever promised or accepted here
//	'm' + "fence/" + ID   the acceptor's minimum age for proposer ID, 8 bytes
//	                      big-endian (fence record)
//	'q' + escaped key + 0x00 0x01 + version
//	                      one item of the deletion GC queue (queue record):
//	                      the register key with every 0x00 written 0x00 0xFF,
//	                      a terminator, the version 8 bytes big-endian, so
//	                      that the byte order is that of (key, version)
//	'l' + lease + key     one entry of the attached index (attached.go):
//	                      the register of key is attached to lease, the
//	                      lease ID 8 bytes big-endian, so that the byte
//	                      order is that of (lease, key); written in the
//	                      batch of the register write that attaches,
//	                      moves or detaches it (Apply reads the stored
//	                      register's lease first, once the store has
//	                      had any entry), deleted with the register by
//	                      Remove and RemoveMany
//
// so Scan walks registers only, in the byte order of their keys.
//
// Age, fence, queue and acceptor ceiling records were added to format
// version 1 after its first release; a build that predates them ignores
// them, which would drop the age fences of deletion GC and, worse, the
// acceptor's floor while promises are written unsynced: do not open a data
// directory with a build older than the one that wrote it. A directory
// written by a build that predates the acceptor ceiling has none (0): its
// promises were all synced, so a floor of 0 keeps them.
//
// # Records (format version 1)
//
// Every Pebble value is a record: a checksum, an encoding version, a body.
// Integers are little-endian.
//
//	+-------------+-------------+---- ... ----+
//	| CRC-32C(4B) | Version(1B) | Body        |
//	+-------------+-------------+---- ... ----+
//
// CRC-32C (Castagnoli) is computed over the Pebble key, then the Version
// byte and the Body. Covering the key means a record found under the wrong
// key fails its checksum like a damaged one. Version is 1 (2 for a register
// with a request table, below).
//
// A register record's body:
//
//	+-------------+-------------+-------------+-------------+
//	| Promise     | Promise     | Accepted    | Accepted    |
//	| Counter(8B) | Proposer(8B)| Counter(8B) | Proposer(8B)|
//	+-------------+-------------+-------------+-------------+
//	+-------------+----------+-------------+----- ... -----+
//	| State       | Flags    | Value       | Value         |
//	| Version(8B) | (1B)     | Length(4B)  | (Length B)    |
//	+-------------+----------+-------------+----- ... -----+
//
// Flags bit 0 is State.Deleted. Bits 1 to 4 each say the record ends with
// one more 8-byte trailer, never 0, after everything else, in either
// encoding version, in this order:
//
//	+-------------+-------------+-------------+-------------+
//	| Lease       | Flags       | LockIndex   | Created     |
//	| (8B, bit 2) | (8B, bit 3) | (8B, bit 4) | (8B, bit 1) |
//	+-------------+-------------+-------------+-------------+
//
// each present exactly when its bit is set (State.Attrs, and State.Created:
// the version that began the register's current life); the other bits are
// zero. Without them the body is exactly 45 + Length bytes. An empty Value
// reads back as nil. A register whose trailers are all 0 (a tombstone, or
// one written before they were kept) is written without their bits, byte
// for byte as before; a build that predates a trailer refuses a record
// with its bit (unknown flags) rather than misread it.
//
// A register whose state holds a request table (State.Requests, exactly-once
// writes) is written in encoding version 2 instead: the same body followed
// by the table's length (4B) and bytes, which must not be empty. Every other
// register is written in version 1, byte for byte as before tables existed,
// so a build that predates them reads it; that build refuses a version 2
// record (unknown version) rather than misread it. This build reads both.
//
// A ceiling record's body is the ceiling, 8 bytes; an acceptor ceiling
// record's the acceptor ceiling, an age record's the age and a fence
// record's the minimum age, 8 bytes each. A queue record's body
// is empty, as is an attached-index record's: the entry is its key.
//
// A record that is too short, has trailing bytes, an unknown Version, unknown
// flags or a checksum that does not match is reported as ErrCorrupt, naming
// the key; its content is never returned.
//
// # Durability
//
// Apply, Remove, RemoveMany, SetCeiling, SetAcceptorCeiling and every
// GCStore write each commit one Pebble batch with Sync, so they return only
// after Pebble's write-ahead log is fsynced. ApplyUnsynced commits without
// Sync (promises, §12): the write-ahead log keeps batches in commit order,
// so the next synced commit makes it durable, and a crash keeps a prefix. Concurrent
// writers queue in Pebble's commit pipeline and share fsyncs (group commit).
// Pebble makes a batch visible to readers before its fsync completes; Get
// and Scan therefore wait for any write still in flight on a key they
// return, so they never answer with data that a crash could still take
// back (see pendingWrites).
//
// A failed fsync stops the store for good (PROTOCOL.md §10): see
// pebbleLogger for how Pebble's fatal errors are turned into ErrSyncFailed.
//
// # Damage
//
// A register or ceiling record that fails its checks is reported by the
// call that read it (ErrCorrupt); the store goes on serving other keys.
// Damage Pebble finds in its own files stops the store (ErrCorrupt on every
// call), and damage found while opening fails OpenPebble with ErrCorrupt.
//
// Pebble tells a damaged write-ahead log from one whose tail was torn by a
// crash only by finding, in a later 32 KiB block of the log, a chunk that
// says the log had been synced past the damage (the "WAL sync chunks" of
// its format major version FormatWALSyncChunks). So:
//
//   - OpenPebble starts a new WAL after opening (a flush), because Pebble
//     writes the first WAL of a new database before it raises the
//     database to the pinned format, in the older chunk format without
//     sync offsets.
//   - Damage inside the last 32 KiB block of the live WAL is
//     indistinguishable from a torn tail: Pebble replays up to it and
//     drops the rest, acknowledged or not, without an error. This is a
//     limit of Pebble's WAL format that this package does not remedy.
package storage
