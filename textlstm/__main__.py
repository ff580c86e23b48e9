from textlstm.cli.main import main

main()
