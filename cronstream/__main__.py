from cronstream.cli import main

main()
