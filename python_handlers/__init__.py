"""Python handlers shipped with Switchboard's samples."""
