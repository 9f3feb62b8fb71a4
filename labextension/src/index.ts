/**
 * JupyterLab 4 extension of gensyn-jupyter: the Gensyn sidebar panel
 * (network, wallet, approvals, tasks, providers) and its commands.
 */
import {
  ILayoutRestorer,
  type JupyterFrontEnd,
  type JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { requestAPI } from './api';
import { gensynIcon } from './icon';
import { openCell } from './opencell';
import { GensynPanel } from './panel/panel';

export { requestAPI } from './api';
export { GensynApiError } from './errors';
export { GensynPanel, PANEL_ID } from './panel/panel';

/** The id of the main plugin, `<package name>:plugin` by JupyterLab convention. */
export const PLUGIN_ID = 'gensyn-jupyter:plugin';

/** The DOM event a cell's training monitor dispatches to open an approval (see monitor.ts). */
export const OPEN_APPROVAL_EVENT = 'gensyn:open-approval';

/** The message logged when the plugin activates. */
export const ACTIVATED_MESSAGE = 'gensyn-jupyter is activated';

/** The commands the plugin adds (also in the command palette, category "Gensyn"). */
export namespace CommandIDs {
  export const openPanel = 'gensyn:open-panel';
  export const approveNext = 'gensyn:approve-next';
  export const connectWallet = 'gensyn:connect-wallet';
}

/** Read the plugin's settings (`labextension/schema/plugin.json`) into the panel. */
function applySettings(panel: GensynPanel, settings: ISettingRegistry.ISettings): void {
  const seconds = settings.get('refreshSeconds').composite;
  if (typeof seconds === 'number') {
    panel.refreshSeconds = seconds;
  }
  const limit = settings.get('tasksLimit').composite;
  if (typeof limit === 'number' && Number.isInteger(limit) && limit >= 1 && limit <= 1000) {
    panel.tasksLimit = limit;
  }
  panel.liveUpdates = settings.get('liveUpdates').composite !== false;
  const fallback = settings.get('fallbackSeconds').composite;
  if (typeof fallback === 'number') {
    panel.fallbackSeconds = fallback;
  }
}

/**
 * The main plugin of gensyn-jupyter.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Train a PyTorch loop from a cell on a pooled GPU of a verified network.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null
  ): void => {
    console.log(ACTIVATED_MESSAGE);

    const panel = new GensynPanel({
      request: requestAPI,
      openCell: (path, cellId) => openCell(app.commands, path, cellId)
    });
    panel.title.icon = gensynIcon;
    panel.title.caption = 'Gensyn';
    app.shell.add(panel, 'left', { rank: 600 });
    if (restorer) {
      restorer.add(panel, 'gensyn-panel');
    }

    app.commands.addCommand(CommandIDs.openPanel, {
      label: 'Gensyn: Open panel',
      caption: 'Show the Gensyn sidebar panel (wallet, approvals, tasks, providers)',
      icon: gensynIcon,
      execute: () => {
        app.shell.activateById(panel.id);
      }
    });
    app.commands.addCommand(CommandIDs.approveNext, {
      label: 'Gensyn: Approve next task',
      caption: 'Approve the oldest task waiting for approval, with the unlocked account',
      execute: async () => {
        app.shell.activateById(panel.id);
        return panel.approveNext();
      }
    });
    app.commands.addCommand(CommandIDs.connectWallet, {
      label: 'Gensyn: Connect wallet',
      caption: 'Connect your browser wallet (MetaMask…) and sign in with it: it signs the approvals',
      execute: async () => {
        app.shell.activateById(panel.id);
        return panel.wallet.connectBrowser();
      }
    });
    // A cell's monitor asks for its approval with a DOM event (no kernel round
    // trip: the kernel is busy running the cell).
    window.addEventListener(OPEN_APPROVAL_EVENT, event => {
      const detail = (event as CustomEvent<{ taskId?: unknown }>).detail;
      app.shell.activateById(panel.id);
      if (detail && typeof detail.taskId === 'string' && detail.taskId) {
        void panel.showApproval(detail.taskId);
      }
    });

    if (palette) {
      for (const command of [CommandIDs.openPanel, CommandIDs.approveNext, CommandIDs.connectWallet]) {
        palette.addItem({ command, category: 'Gensyn' });
      }
    }

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          applySettings(panel, settings);
          settings.changed.connect(() => applySettings(panel, settings));
        })
        .catch(reason => {
          console.warn(`${PLUGIN_ID}: cannot load settings`, reason);
        });
    }
  }
};

export default plugin;
