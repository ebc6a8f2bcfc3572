output "gateway_url" {
  description = "The URL agents dial (POSTERN_GATEWAY_URL) and people log in to."
  value       = module.postern.gateway_url
}

output "agent_environment" {
  description = "Environment for postern-agent in your private network (add POSTERN_AGENT_TOKEN)."
  value       = module.postern.agent_environment
}

output "bootstrap_admin_token_secret_arn" {
  description = "Secret holding the first admin's API key."
  value       = module.postern.bootstrap_admin_token_secret_arn
}

output "alb_dns_name" {
  description = "Point domain_name here if route53_zone_id is not set."
  value       = module.postern.alb_dns_name
}
