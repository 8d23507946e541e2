"""Application: the command line (:mod:`.cli`), config files and one thin module per command.

Each command module parses its flags, calls the library and prints; the rules live in
the library. Nothing imports this package.
"""
