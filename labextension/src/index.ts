/**
 * JupyterLab 4 extension of gensyn-jupyter.
 *
 * For now a single plugin that activates and says so; the sidebar panel
 * (wallet, approvals, tasks, providers) is added by a later issue.
 */
import type {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';

/** The id of the main plugin, `<package name>:plugin` by JupyterLab convention. */
export const PLUGIN_ID = 'gensyn-jupyter:plugin';

/** The message logged when the plugin activates. */
export const ACTIVATED_MESSAGE = 'gensyn-jupyter is activated';

/**
 * The main plugin of gensyn-jupyter.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Train a PyTorch loop from a cell on a pooled GPU of a verified network.',
  autoStart: true,
  activate: (_app: JupyterFrontEnd): void => {
    console.log(ACTIVATED_MESSAGE);
  }
};

export default plugin;
