import { createApp } from 'vue'
import { createPinia } from 'pinia'
import InstallerApp from './InstallerApp.vue'
import './styles.css'

createApp(InstallerApp).use(createPinia()).mount('#app')
