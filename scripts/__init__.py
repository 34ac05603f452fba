"""The mlplatform command line and helper scripts."""
