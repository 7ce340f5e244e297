"""The infer flow: plan CPU or GPU, recognise on this CPU, or on a spot fleet over SQS and S3."""
