# The policy store and audit sink, exactly as the DynamoDB adapter
# (state/src/dynamodb) expects it: see "Policy stores" in the top-level
# README. The adapter checks the table and its four indexes at start and is
# not given create_table=true, so the task role needs no CreateTable.

locals {
  table_name = var.dynamodb_table_name != null ? var.dynamodb_table_name : "${var.name}-policy"

  # (index, partition key, sort key), as state/src/dynamodb/table.rs INDEXES.
  table_indexes = {
    by_start   = { hash = "session_list", range = "session_start" }
    by_actor   = { hash = "audit_actor", range = "audit_ts" }
    by_session = { hash = "audit_session", range = "audit_ts" }
    by_target  = { hash = "audit_target", range = "audit_ts" }
  }

  # Every key attribute of the table and its indexes; all strings.
  table_key_attributes = distinct(concat(
    ["pk", "sk"],
    flatten([for i in values(local.table_indexes) : [i.hash, i.range]]),
  ))
}

resource "aws_dynamodb_table" "policy" {
  name         = local.table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  range_key    = "sk"

  dynamic "attribute" {
    for_each = local.table_key_attributes
    content {
      name = attribute.value
      type = "S"
    }
  }

  dynamic "global_secondary_index" {
    for_each = local.table_indexes
    content {
      name            = global_secondary_index.key
      hash_key        = global_secondary_index.value.hash
      range_key       = global_secondary_index.value.range
      projection_type = "ALL"
    }
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = local.kms_key_arn
  }

  deletion_protection_enabled = var.dynamodb_deletion_protection

  tags = local.tags
}
