"""Core: the request spec, output sizes and progress events. Depends on nothing else in pixgen."""
