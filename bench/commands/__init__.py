"""One module per `bench` subcommand: NAME, HELP, add_arguments(parser), run(args, log)."""
