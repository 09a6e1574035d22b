"""`python -m service` is the `llmtune-receiver` command."""

from service.cli import main

raise SystemExit(main())
