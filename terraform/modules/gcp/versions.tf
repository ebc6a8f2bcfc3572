terraform {
  # Validation blocks that compare two variables need Terraform 1.9.
  required_version = ">= 1.9"

  required_providers {
    google = {
      source = "hashicorp/google"
      # invoker_iam_disabled and deletion_protection on Cloud Run v2 services,
      # ssl_mode on Cloud SQL.
      version = ">= 6.14, < 8.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5, < 4.0"
    }
  }
}
