"""The command-line commands, one module each; `service/cli/` builds the parser."""
