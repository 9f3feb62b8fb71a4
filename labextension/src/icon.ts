/** The Gensyn icon of the sidebar tab: a small inline SVG, coloured by the theme. */
import { LabIcon } from '@jupyterlab/ui-components';

/** A hexagon (the network) around three linked nodes; `jp-icon3` follows the theme's icon colour. */
export const GENSYN_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 1.5 21.1 6.75v10.5L12 22.5 2.9 17.25V6.75L12 1.5zm0 2.3L4.9 7.9v8.2L12 20.2l7.1-4.1V7.9L12 3.8z"/>
    <circle cx="12" cy="8" r="2"/>
    <circle cx="8.2" cy="14.5" r="2"/>
    <circle cx="15.8" cy="14.5" r="2"/>
    <path d="M11.4 9.3 8.6 13.3l1 .6 2.8-4zm1.2 0-1 .6 2.8 4 1-.6zM9.9 13.9h4.2v1.2H9.9z"/>
  </g>
</svg>`;

export const gensynIcon = new LabIcon({ name: 'gensyn-jupyter:gensyn', svgstr: GENSYN_SVG });
