"""The platform's capabilities, one ComponentResource each."""
