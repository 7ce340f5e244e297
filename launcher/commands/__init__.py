"""One module per topic; each has `register(app)`. Import them here, in help order."""

from launcher.commands import ledger_cmds

COMMAND_MODULES = [ledger_cmds]
