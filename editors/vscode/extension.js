// Starts slo's language server (`slo lsp`, over stdio) for .config documents.
// The command comes from the setting slo.server.command; TOML files are served too when
// slo.server.toml is on.
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const settings = vscode.workspace.getConfiguration("slo");
  const [command, ...args] = settings.get("server.command", ["slo", "lsp"]);
  const documentSelector = [{ language: "slo" }];
  if (settings.get("server.toml", false)) {
    documentSelector.push({ language: "toml", scheme: "file" });
  }
  client = new LanguageClient(
    "slo",
    "slo language server",
    { command, args, transport: TransportKind.stdio },
    { documentSelector }
  );
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration("slo.server")) {
        vscode.window.showInformationMessage("Reload the window for the slo server setting to take effect.");
      }
    })
  );
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
