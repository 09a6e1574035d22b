"""The command-line commands, one module each; `service/cli.py` builds the parser."""
