"""`pipeline-ops`: the on-call commands. They find an environment's resources from its deployed stacks' outputs
(`<env>-Stateful` and one stack per enabled form) and read the upload ledger; boto3 only."""
