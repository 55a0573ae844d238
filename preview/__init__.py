"""Offline preview: run the real program under the Pulumi SDK's mock monitor, write what it declares,
and check it against the policy pack. No Pulumi CLI, cloud account or cluster needed."""
