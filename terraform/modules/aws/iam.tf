# Two roles, each with only what it needs:
# - the task execution role (used by ECS itself, before the gateway starts):
#   pull the image, write the log stream, read the gateway's secrets;
# - the task role (the gateway's own AWS identity): read and write the policy
#   table and its indexes, nothing else.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    # Only ECS acting for this account may assume the roles (confused deputy).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:*"]
    }
  }
}

# ---------------------------------------------------------------- execution role

resource "aws_iam_role" "execution" {
  name               = "postern-${var.name}-execution"
  description        = "ECS task execution role of the Postern ${var.name} gateway"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "execution" {
  # GetAuthorizationToken has no resource-level permissions: "*" is the only
  # resource AWS accepts for it. Pulling is limited to the named repositories.
  dynamic "statement" {
    for_each = length(var.ecr_repository_arns) > 0 ? [1] : []
    content {
      sid       = "EcrLogin"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = length(var.ecr_repository_arns) > 0 ? [1] : []
    content {
      sid = "EcrPullTheGatewayImage"
      actions = [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
      ]
      resources = var.ecr_repository_arns
    }
  }

  statement {
    sid       = "WriteTheGatewayLogStreams"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.gateway.arn}:log-stream:*"]
  }

  statement {
    sid       = "ReadTheGatewaySecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = sort(distinct(values(local.secrets)))
  }

  # The secrets are encrypted with the module's key: decrypting them goes
  # through Secrets Manager only.
  statement {
    sid       = "DecryptTheSecretsThroughSecretsManager"
    actions   = ["kms:Decrypt"]
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "postern-gateway-start"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# ---------------------------------------------------------------- task role

resource "aws_iam_role" "task" {
  name               = "postern-${var.name}-task"
  description        = "The Postern ${var.name} gateway's own identity: its policy store table"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "task" {
  # Exactly the calls of state/src/dynamodb:
  # - DescribeTable: the check at start that the table and its indexes exist
  #   and are active (table.rs);
  # - GetItem (consistent reads by name and by token hash), PutItem
  #   (conditional creates, documents, single audit events), UpdateItem
  #   (session end), DeleteItem (connections, documents), BatchWriteItem
  #   (audit batches), Query (partitions);
  # - TransactWriteItems (an agent and its token item together) has no IAM
  #   action of its own: it is authorised as the PutItem and DeleteItem it
  #   contains, so it needs nothing more.
  # Not granted: CreateTable (the module creates the table; the store URL has
  # no create_table=true), Scan, BatchGetItem, ConditionCheckItem, streams.
  statement {
    sid = "PolicyStoreTable"
    actions = [
      "dynamodb:BatchWriteItem",
      "dynamodb:DeleteItem",
      "dynamodb:DescribeTable",
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:Query",
      "dynamodb:UpdateItem",
    ]
    resources = [aws_dynamodb_table.policy.arn]
  }

  # Sessions newest first (by_start) and audit by actor, session and target.
  statement {
    sid       = "PolicyStoreIndexes"
    actions   = ["dynamodb:Query"]
    resources = [for index in keys(local.table_indexes) : "${aws_dynamodb_table.policy.arn}/index/${index}"]
  }

  # The table is encrypted with the module's key; DynamoDB uses it on the
  # gateway's behalf, and only DynamoDB may.
  statement {
    sid = "TableKeyThroughDynamoDB"
    actions = [
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:Encrypt",
      "kms:GenerateDataKey",
    ]
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["dynamodb.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "postern-policy-store"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}
