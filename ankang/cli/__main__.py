from ankang.cli import main

main()
