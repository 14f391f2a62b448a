from rmapcheck.cli import main

main()
