variable "region" {
  description = "AWS region to deploy to."
  type        = string
}

variable "name" {
  description = "Name of the deployment (see the module's `name`)."
  type        = string
  default     = "postern"
}

variable "vpc_id" {
  description = "An existing VPC with private subnets (outbound through NAT or VPC endpoints) and public subnets."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets of the gateway tasks and Redis, two Availability Zones or more."
  type        = list(string)
}

variable "public_subnet_ids" {
  description = "Public subnets of the ALB, two Availability Zones or more."
  type        = list(string)
}

variable "container_image" {
  description = "The postern-gateway image, preferably by digest."
  type        = string
}

variable "ecr_repository_arns" {
  description = "ECR repositories the image is pulled from (empty for a public registry)."
  type        = list(string)
  default     = []
}

variable "domain_name" {
  description = "The gateway's name, e.g. postern.example.com."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate for domain_name, in the same region."
  type        = string
}

variable "route53_zone_id" {
  description = "Hosted zone of domain_name, for the alias record (null: manage DNS yourself)."
  type        = string
  default     = null
}

variable "access_logs_bucket" {
  description = "S3 bucket for ALB access logs (null: none)."
  type        = string
  default     = null
}

variable "waf_web_acl_arn" {
  description = "Regional WAF web ACL for the ALB (null: none)."
  type        = string
  default     = null
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
