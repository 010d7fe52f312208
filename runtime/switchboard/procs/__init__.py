"""What a child process does after the fork: workers now; mules and spoolers share it."""
