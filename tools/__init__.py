"""Developer and operator tools: the `loaxa` command, the embedded broker, test runners."""
