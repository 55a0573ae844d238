"""The bootstrap program (its own Pulumi project): what the platform's first `pulumi up` needs to exist."""
