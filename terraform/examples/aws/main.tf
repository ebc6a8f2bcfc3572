# An example root module: the Postern gateway on ECS Fargate in an existing
# VPC. Copy terraform.tfvars.example to terraform.tfvars, fill it in, then
# `terraform init && terraform apply`.

module "postern" {
  source = "../../modules/aws"

  name               = var.name
  vpc_id             = var.vpc_id
  private_subnet_ids = var.private_subnet_ids
  public_subnet_ids  = var.public_subnet_ids

  container_image     = var.container_image
  ecr_repository_arns = var.ecr_repository_arns
  task_cpu            = 1024
  task_memory         = 2048

  domain_name        = var.domain_name
  certificate_arn    = var.certificate_arn
  route53_zone_id    = var.route53_zone_id
  access_logs_bucket = var.access_logs_bucket
  waf_web_acl_arn    = var.waf_web_acl_arn

  drain_grace_seconds = 30

  # OIDC logins when an issuer is given; API tokens only otherwise.
  extra_environment = {
    for k, v in {
      POSTERN_OIDC_ISSUER   = var.oidc_issuer
      POSTERN_OIDC_AUDIENCE = var.oidc_audience
    } : k => v if v != null
  }

  min_tasks                   = 2
  max_tasks                   = 10
  cpu_target_percent          = 60
  requests_per_target         = 3000
  active_connections_per_task = 2000

  tags = {
    project = "postern"
  }
}
