"""python -m vqcodec: the command line."""

from vqcodec.cli import main

main()
