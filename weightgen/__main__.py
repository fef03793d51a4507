from weightgen.cli import main

main()
