"""One module per topic; each has `register(app)`. Import them here, in help order."""

from launcher.commands import (
    alerts_cmds,
    aws_cmds,
    infer_cmds,
    init_cmds,
    ledger_cmds,
    report_cmds,
    train_cmds,
)

COMMAND_MODULES = [init_cmds, train_cmds, infer_cmds, aws_cmds, ledger_cmds, report_cmds, alerts_cmds]
