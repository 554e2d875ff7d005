"""`python -m audioe2e` = the `audioe2e` command."""
from .cli import main

if __name__ == "__main__":
    main()
