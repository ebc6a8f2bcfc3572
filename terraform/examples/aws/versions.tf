terraform {
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5, < 4.0"
    }
  }

  # The state holds the generated secrets (peer secret, admin token, Redis
  # AUTH): keep it in an encrypted, access-controlled backend, e.g.
  #
  # backend "s3" {
  #   bucket       = "my-terraform-state"
  #   key          = "postern/terraform.tfstate"
  #   region       = "eu-west-1"
  #   encrypt      = true
  #   use_lockfile = true
  # }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = { "managed-by" = "terraform" }
  }
}
