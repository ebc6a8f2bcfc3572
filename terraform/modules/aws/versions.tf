terraform {
  # Validation blocks that compare two variables need Terraform 1.9.
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # client_keep_alive on aws_lb and metric math in target tracking policies.
      version = ">= 5.60, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5, < 4.0"
    }
  }
}
