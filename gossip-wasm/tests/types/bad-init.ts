// Must NOT compile: the package entries load the module themselves and export no loader.
import { initSync } from "../../pkg/index.js";

export const loader = initSync;
