variable "project_id" {
  description = "The Google Cloud project to deploy to."
  type        = string
}

variable "region" {
  description = "Region of everything (e.g. europe-west1)."
  type        = string
}

variable "name" {
  description = "Name of the deployment (see the module's `name`)."
  type        = string
  default     = "postern"
}

variable "container_image" {
  description = "The postern-gateway image in Artifact Registry, preferably by digest."
  type        = string
}

variable "subnet_cidr" {
  description = "Range of the subnetwork Cloud Run's Direct VPC egress uses."
  type        = string
  default     = "10.20.0.0/24"
}

variable "oidc_issuer" {
  description = "OIDC issuer people log in through (null: API tokens only)."
  type        = string
  default     = null
}

variable "oidc_audience" {
  description = "Audience the issuer's tokens must carry (required with oidc_issuer)."
  type        = string
  default     = null
}
