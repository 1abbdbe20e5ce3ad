"""``python -m cvae_sdk`` runs the command line."""

from cvae_sdk.cli import main

if __name__ == "__main__":
    main()
