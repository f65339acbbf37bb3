from munit_cli.cli import main

main()
