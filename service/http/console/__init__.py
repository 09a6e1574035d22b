"""The web console: server-rendered admin pages at `/admin/`, behind a session cookie."""
