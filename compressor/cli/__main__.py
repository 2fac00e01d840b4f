"""``python -m compressor.cli`` runs the compress command line."""
from compressor.cli import run

run()
