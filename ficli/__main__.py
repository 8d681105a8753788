from ficli.cli import main

main()
