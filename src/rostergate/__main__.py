from rostergate.cli import main

main()
