package postgres

// CommitterPID returns the backend pid of the committer connection, 0 while
// this store is not the committer.
func (s *Store) CommitterPID() uint32 { return s.leaderPID.Load() }

// DSN returns the dsn the store was opened with.
func (s *Store) DSN() string { return s.dsn }

// Opts returns the store's options with defaults applied.
func (s *Store) Opts() Options { return s.opts }
