"""The `edgeff` command: one module per subcommand (each with `register(subparsers)` and `run(args)`), the
options they share (options.py), and the pipeline's report (report/). Domain logic lives in the library;
these modules parse, call it, and print."""
