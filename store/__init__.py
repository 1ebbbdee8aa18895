"""Storage: database engine (SQLite default, PostgreSQL for scale), tables, migrations."""
